"""Training-data attribution benchmark: every example-importance method against ground truth.

Not part of a reproduced study: it runs only when named (``xairepro reproduce tda-benchmark``).
"""
