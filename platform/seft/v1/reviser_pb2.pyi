from seft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RevisionItem(_message.Message):
    __slots__ = ("prompt", "original")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    prompt: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    original: str
    def __init__(self, prompt: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., original: _Optional[str] = ...) -> None: ...

class ReviseRequest(_message.Message):
    __slots__ = ("request_id", "items", "sampling", "force_revise")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    FORCE_REVISE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[RevisionItem]
    sampling: _common_pb2.SamplingParams
    force_revise: bool
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RevisionItem, _Mapping]]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., force_revise: _Optional[bool] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("label", "text", "revised", "usage")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REVISED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    label: _common_pb2.RevisionLabel
    text: str
    revised: bool
    usage: _common_pb2.Usage
    def __init__(self, label: _Optional[_Union[_common_pb2.RevisionLabel, str]] = ..., text: _Optional[str] = ..., revised: _Optional[bool] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class ReviseResponse(_message.Message):
    __slots__ = ("request_id", "revisions", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    revisions: _containers.RepeatedCompositeFieldContainer[Revision]
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., revisions: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...
