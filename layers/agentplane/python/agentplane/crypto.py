"""KMS envelope encryption for secrets at rest.

Each value gets a fresh data key from KMS; the value is sealed with AES-256-GCM under it, and only
the KMS-encrypted data key is stored beside the ciphertext. The workspace id is bound in as
authenticated data (and as KMS encryption context), so a sealed value copied into another
workspace's item does not open.
"""

from __future__ import annotations

import base64
import os

from agentplane import clients
from agentplane.settings import get_settings


def seal(plaintext: str, workspace_id: str) -> dict[str, str]:
    """Encrypt `plaintext` for `workspace_id`; the result is what gets stored."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    context = {"workspace_id": workspace_id}
    data_key = clients.kms().generate_data_key(
        KeyId=get_settings().kms_key_id, KeySpec="AES_256", EncryptionContext=context
    )
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key["Plaintext"]).encrypt(nonce, plaintext.encode(), workspace_id.encode())
    return {
        "v": "1",
        "key": base64.b64encode(data_key["CiphertextBlob"]).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "data": base64.b64encode(ciphertext).decode(),
    }


def unseal(sealed: dict[str, str], workspace_id: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data_key = clients.kms().decrypt(
        CiphertextBlob=base64.b64decode(sealed["key"]), EncryptionContext={"workspace_id": workspace_id}
    )["Plaintext"]
    plaintext = AESGCM(data_key).decrypt(
        base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["data"]), workspace_id.encode()
    )
    return plaintext.decode()


def mask(value: str) -> str:
    """What a list shows of a secret: never more than its last four characters."""
    return "••••" + value[-4:] if len(value) > 8 else "••••"
