"""sparsecod: re-run "When Does Sparsity Mitigate the Curse of Depth in LLMs" (2026) end to end."""

from .model import ModelConfig, MoEConfig, Transformer, load_model, save_model

__all__ = ["ModelConfig", "MoEConfig", "Transformer", "load_model", "save_model"]
__version__ = "0.1.0"
