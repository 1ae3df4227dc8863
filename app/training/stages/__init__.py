"""The stages of SPEC section 7, one module each, in the order the pipeline runs them."""
