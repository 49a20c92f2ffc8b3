"""Data sets: registry, offline-first loaders, bundled and generated sets, transforms, splits."""
