"""Old name of :mod:`app.evaluation.false_positives`, kept only until ``runner.py`` imports the
new one (issue 26, item 5); delete this module then."""

from app.evaluation.false_positives import false_positive_breakdown

__all__ = ["false_positive_breakdown"]
