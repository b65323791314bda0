"""The shared data types every layer passes around: dataset records and detections.

They sit on the bottom floor (beside ``errors`` and ``io``) so that readers,
metrics, training and the commands can all import them without importing one
another; see docs/architecture.md.
"""
