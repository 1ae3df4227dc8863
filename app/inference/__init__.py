"""Pure functions of (model, images, windows).

Features, post-processing, classification, drawing; no HTTP, no files.
"""
