"""Modalities as registered stages (:mod:`.base`): what differs between audio, text and video
on the way from a manifest row to an encoder input. One module per modality; importing this
package registers them, and a new modality is one module plus its line below."""

from mer_features.modalities.base import (NoOptions, Precheck, Stage, get_stage,
                                          known_modalities, register_stage, stages)
from mer_features.modalities import audio, text, video  # noqa: F401  (registration, in this order)
from mer_features.modalities.audio import AudioStage
from mer_features.modalities.text import TextOptions, TextStage
from mer_features.modalities.video import VideoOptions, VideoStage

__all__ = ["AudioStage", "NoOptions", "Precheck", "Stage", "TextOptions", "TextStage",
           "VideoOptions", "VideoStage", "get_stage", "known_modalities", "register_stage",
           "stages"]
