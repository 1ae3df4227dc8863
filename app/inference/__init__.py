"""Pure functions of (model, images, windows): features, post-processing, classification, drawing."""
