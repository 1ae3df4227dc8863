"""The stages of docs/model.md §7, one module each, in the order the pipeline runs them."""
