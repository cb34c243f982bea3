"""Conversions between seft's Python types and the seft.v1 protos, shared by the clients and the
services so the two sides cannot disagree."""

from __future__ import annotations

from seft.labelling import Label
from seft.v1 import common_pb2

LABEL_OF = {common_pb2.MAJOR_REVISE: Label.MAJOR, common_pb2.MINOR_REVISE: Label.MINOR,
            common_pb2.NO_REVISE: Label.NO}
ENUM_OF = {label: enum for enum, label in LABEL_OF.items()}


def messages(conv: list[dict]) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in conv]
