"""The paper's model: Pre-LN Llama-style decoder, dense or MoE, MHA/GQA/MQA (spec §1.2-§1.4)."""

from .config import ConfigError, ModelConfig, MoEConfig
from .io import load_model, read_model_config, save_model
from .presets import PAPER_MODELS, get_preset
from .transformer import AffineBlock, Block, BlockTrace, ForwardContext, ModelOutput, Transformer

__all__ = [
    "AffineBlock", "Block", "BlockTrace", "ConfigError", "ForwardContext", "ModelConfig", "ModelOutput",
    "MoEConfig", "PAPER_MODELS", "Transformer", "get_preset", "load_model", "read_model_config", "save_model",
]
