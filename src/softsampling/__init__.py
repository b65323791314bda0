"""softsampling: object detection with missing annotations (Soft Sampling, Wu et al., BMVC 2019)."""

__version__ = "0.1.0"
