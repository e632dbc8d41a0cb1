"""Dynamic Channel Execution (Spasov & Liò, 2019): train with a bandit-chosen fraction
of channels active, then keep the most salient ones.

bandit (CUCB, no Keras inside) · saliency (Taylor estimate from the backward pass) ·
gates (ChannelGate, gate_model / strip_gates) · compact (gathered execution of active
channels) · callback (CUCBCallback) · pipeline (dce_plan, run_dce) · tensorboard.
"""
from keras_slim.dce.bandit import CUCB
from keras_slim.dce.callback import POLICIES, CUCBCallback
from keras_slim.dce.gates import (ChannelGate, compact_summary, gate_model, gates_of,
                                  strip_gates)
from keras_slim.dce.pipeline import DCEResult, dce_plan, run_dce

__all__ = ["CUCB", "CUCBCallback", "ChannelGate", "DCEResult", "POLICIES",
           "compact_summary", "dce_plan", "gate_model", "gates_of", "run_dce", "strip_gates"]
