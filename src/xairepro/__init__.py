"""xairepro: explainable-AI research toolkit and reproduction of two published studies.

Layers (lower never import upper): data -> models -> train -> explain / lico / metrics
-> experiments -> runner -> report -> cli.  Import sub-packages directly, e.g.
``from xairepro.explain import GradCAM``.
"""

__version__ = "0.1.0"
