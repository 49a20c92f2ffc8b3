"""The Label-Free XAI reproduction study (seed 003): one module per figure or table.

- ``feature_consistency``: Figure 1 (claim 1), latent shift vs % of features perturbed;
- ``example_consistency``: Figure 2 (claim 2), similarity rates of Most vs Least important examples;
- ``pretext``: Table 3 (claim 3), Pearson correlations between pretext tasks;
- ``disentangled_vae``: Figure 4 (claim 4), unit-map correlations of beta-VAE / TC-VAE vs beta.

Modules here import only light dependencies; the computations (``*_cells.py``, ``trained_models.py``) import
torch and the explainers when a cell runs.
"""
