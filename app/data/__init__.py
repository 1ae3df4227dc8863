"""What comes from disk or the user before any network runs.

VOC layout, proposals (and their cache), the generated shapes dataset.
"""
