"""MessagePack codec for each end of the socket pair. No pickle: the decoder accepts only the
declared message types and rejects malformed frames with msgspec.ValidationError/DecodeError."""

from __future__ import annotations

import msgspec

from protocol.messages import ToGateway, ToWorker

DecodeError = (msgspec.DecodeError, msgspec.ValidationError)


class GatewayCodec:
    """The gateway's end: encodes ToWorker, decodes ToGateway."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[ToGateway] = msgspec.msgpack.Decoder(ToGateway)

    def encode(self, message: ToWorker) -> bytes:
        return self._encoder.encode(message)

    def decode(self, frame: bytes) -> ToGateway:
        return self._decoder.decode(frame)


class WorkerCodec:
    """The worker's end: encodes ToGateway, decodes ToWorker."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)

    def encode(self, message: ToGateway) -> bytes:
        return self._encoder.encode(message)

    def decode(self, frame: bytes) -> ToWorker:
        return self._decoder.decode(frame)
