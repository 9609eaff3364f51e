"""MARLIN pretraining: objective, schedule, Lightning module and data, and the `pretrain` entry point."""
from .config import PretrainConfig, TrainerSettings, pretrain_config
from .objective import adversarial_loss, critic_loss, gradient_penalty, masked_targets, reconstruction_loss
from .runner import PretrainResult, pretrain

__all__ = ["PretrainConfig", "TrainerSettings", "pretrain_config", "pretrain", "PretrainResult",
           "adversarial_loss", "critic_loss", "gradient_penalty", "masked_targets", "reconstruction_loss"]
