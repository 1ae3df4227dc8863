"""What comes from disk or the user before any network runs: VOC layout, proposals, generated shapes."""
