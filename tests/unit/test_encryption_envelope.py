"""Encryption at rest: the envelope format, the local KEK, and an event row sealed and opened."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from actors.crypto.envelope import PREFIX, is_envelope, key_id_of, open_envelope, seal
from actors.crypto.event_fields import ENC_FIELD, is_encrypted_row, open_row, row_key_ids, seal_row
from actors.crypto.kek import LocalKek
from actors.errors import DataKeyUnavailable, DecryptionFailed, EncryptionError, TracemillError
from configs.base import SettingsError
from configs.encryption import EncryptionSettings
from configs.settings import TracemillSettings

CTX = b"session/1/url"


def _aead() -> AESGCM:
    return AESGCM(os.urandom(32))


def test_round_trip_and_key_id() -> None:
    aead = _aead()
    envelope = seal(aead, 7, "pässwörd-typed".encode(), CTX)
    assert envelope.startswith(PREFIX) and is_envelope(envelope)
    assert "pässwörd" not in envelope and key_id_of(envelope) == 7
    assert open_envelope(aead, 7, envelope, CTX).decode() == "pässwörd-typed"
    assert open_envelope(aead, 7, seal(aead, 7, b"", CTX), CTX) == b""
    assert seal(aead, 7, b"same", CTX) != seal(aead, 7, b"same", CTX)  # a fresh nonce each time


def test_tampering_is_an_error_of_the_tree() -> None:
    aead = _aead()
    envelope = seal(aead, 3, b"value", CTX)
    body = bytearray(base64.b64decode(envelope[len(PREFIX):]))
    body[-1] ^= 1
    tampered = PREFIX + base64.b64encode(bytes(body)).decode()
    with pytest.raises(DecryptionFailed) as caught:
        open_envelope(aead, 3, tampered, CTX)
    assert isinstance(caught.value, EncryptionError) and isinstance(caught.value, TracemillError)
    assert caught.value.code == "decryption_failed"
    with pytest.raises(DecryptionFailed):  # moved to another row or column
        open_envelope(aead, 3, envelope, b"session/2/url")
    with pytest.raises(DecryptionFailed):  # another key under the same id
        open_envelope(_aead(), 3, envelope, CTX)
    for broken in ("tm1:", "tm1:!!!", "plain text", PREFIX + "AAAA"):
        with pytest.raises(DecryptionFailed):
            open_envelope(aead, 3, broken, CTX)


def test_wrong_key_id_is_refused_before_decrypting() -> None:
    aead = _aead()
    envelope = seal(aead, 5, b"value", CTX)
    with pytest.raises(DecryptionFailed, match="names data key 5, not 6"):
        open_envelope(aead, 6, envelope, CTX)


def test_errors_pickle_with_their_message() -> None:
    import pickle

    for exc in (DecryptionFailed("x"), DataKeyUnavailable("y")):
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc) and str(again) == str(exc) and again.code == exc.code


def test_local_kek_wraps_per_workspace() -> None:
    kek = LocalKek(os.urandom(32))
    data_key = os.urandom(32)
    wrapped = asyncio.run(kek.wrap(data_key, "ws-a"))
    assert data_key not in wrapped
    assert asyncio.run(kek.unwrap(wrapped, "ws-a")) == data_key
    with pytest.raises(DataKeyUnavailable):  # a row moved to another workspace
        asyncio.run(kek.unwrap(wrapped, "ws-b"))
    with pytest.raises(DataKeyUnavailable):  # another KEK
        asyncio.run(LocalKek(os.urandom(32)).unwrap(wrapped, "ws-a"))
    assert kek.ref.startswith("local:") and kek.ref != LocalKek(os.urandom(32)).ref


class _OneKey:
    """A keyring holding one data key (open_row needs only `key`)."""

    def __init__(self, key_id: int, aead: AESGCM):
        self.key_id, self.aead = key_id, aead

    async def key(self, conn: object, key_id: int) -> AESGCM:
        if key_id != self.key_id:
            raise DataKeyUnavailable(f"data key {key_id} does not exist")
        return self.aead


def test_event_row_sealed_and_opened() -> None:
    aead, sid = _aead(), uuid.uuid4()
    ts = datetime.now(timezone.utc)
    row = (sid, 4, "screenshot", ts, "https://shop.example/secret-path",
           '{"text":"Pay now","selectors":[]}', '{"screenshot_id":"shot-1","value":"typed-secret"}')
    sealed = seal_row(aead, 9, row)
    assert sealed[:4] == row[:4] and sealed[4] is None and sealed[5] is None
    stored = {"seq": 4, "type": "screenshot", "url": None, "target": None, "payload": sealed[6]}
    assert "secret" not in sealed[6] and "Pay now" not in sealed[6]
    assert json.loads(sealed[6])["screenshot_id"] == "shot-1" and ENC_FIELD in json.loads(sealed[6])
    assert is_encrypted_row(stored) and row_key_ids(stored) == {9}
    opened = asyncio.run(open_row(_OneKey(9, aead), None, sid, stored))  # type: ignore[arg-type]
    assert (opened["url"], opened["target"], opened["payload"]) == row[4:]
    with pytest.raises(DecryptionFailed):  # the same values under another session
        asyncio.run(open_row(_OneKey(9, aead), None, uuid.uuid4(), stored))  # type: ignore[arg-type]
    with pytest.raises(DecryptionFailed):  # or another type
        asyncio.run(open_row(_OneKey(9, aead), None, sid, {**stored, "type": "click"}))  # type: ignore[arg-type]
    bare = seal_row(aead, 9, (sid, 5, "scroll", ts, None, None, '{"x":0,"y":10}'))
    back = asyncio.run(open_row(_OneKey(9, aead), None, sid,  # type: ignore[arg-type]
                                {"seq": 5, "type": "scroll", "url": None, "target": None, "payload": bare[6]}))
    assert (back["url"], back["target"], back["payload"]) == (None, None, '{"x":0,"y":10}')
    plain = {"seq": 1, "url": "https://a.example", "target": None, "payload": '{"title":"x"}'}
    assert not is_encrypted_row(plain) and row_key_ids(plain) == set()


def test_settings_take_a_kek_from_the_environment_and_keep_it_secret() -> None:
    kek = base64.b64encode(os.urandom(32)).decode()
    env = {"DATABASE_URL": "postgresql://h/db", "TRACEMILL_ENCRYPTION_KEK": kek, "TRACEMILL_ENCRYPTION_SCOPE": "keyed"}
    settings = TracemillSettings.from_env(env, {"object_store": {"local_dir": "/tmp/tm-enc-unit"}})
    assert settings.encryption.enabled and settings.encryption.scope == "keyed"
    assert kek not in repr(settings.public_args()) and settings.secret_values()["encryption.kek"] == kek
    assert not TracemillSettings.from_env({"DATABASE_URL": "postgresql://h/db"},
                                          {"object_store": {"local_dir": "/tmp/tm-enc-unit"}}).encryption.enabled
    with pytest.raises(SettingsError, match="32 bytes"):
        TracemillSettings.from_env({**env, "TRACEMILL_ENCRYPTION_KEK": base64.b64encode(b"short").decode()},
                                   {"object_store": {"local_dir": "/tmp/tm-enc-unit"}})
    with pytest.raises(ValueError, match="either"):
        EncryptionSettings(kek=kek, kms_key_id="alias/x")  # type: ignore[arg-type]


def test_kms_kek_over_motos_http_server() -> None:
    """The KMS KEK against moto's KMS over HTTP (nothing patched): a data key wrapped with the
    workspace as encryption context unwraps for that workspace only."""
    import boto3

    from actors.crypto.kek import KmsKek
    from cluster.doubles.moto_server import dummy_aws_env, moto_s3_server

    with dummy_aws_env(), moto_s3_server() as endpoint:
        key_id = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
        kek = KmsKek(key_id, "us-east-1", endpoint)
        data_key = os.urandom(32)
        wrapped = asyncio.run(kek.wrap(data_key, "ws-a"))
        assert data_key not in wrapped and kek.ref == f"kms:{key_id}"
        assert asyncio.run(kek.unwrap(wrapped, "ws-a")) == data_key
        with pytest.raises(DataKeyUnavailable, match="KMS could not unwrap"):
            asyncio.run(kek.unwrap(wrapped, "ws-b"))
