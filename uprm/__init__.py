"""UPRM: Unified Physical-world Regularized MoE for in-depth security-oriented video understanding.

Everything here runs without a UI (and without Gradio installed).
"""
__version__ = "0.1.0"
