"""LICO: prompt learner, frozen text encoders, manifold-matching and optimal-transport losses."""
