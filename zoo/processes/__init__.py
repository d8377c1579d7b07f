"""Processes: how a network's outputs become samples, kept apart from the networks themselves.

A process (diffusion schedules and samplers, ...) is numpy-first: its math runs unchanged on torch tensors
(``model.sample``, the recipes) and on numpy arrays (the torch-free runtime of ``export``), so both
runtimes draw the same samples from the same noise. Nothing here imports torch at module level.
"""
