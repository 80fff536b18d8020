"""Loading from the Hugging Face Hub that fails at once, with the offline choices, when
the Hub cannot be reached (instead of `datasets`' retry loop)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    """The Hub address `huggingface_hub` uses (``HF_ENDPOINT`` overrides it)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an HTTP request to the Hub gets any answer within ``timeout`` seconds.

    The request runs in a daemon thread so a hanging DNS lookup (which ignores socket
    timeouts) cannot hold the caller longer than ``timeout``. urllib honours the same
    proxy variables as `huggingface_hub`.
    """
    url = endpoint or hub_endpoint()
    answered = threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            answered.set()
        except urllib.error.HTTPError:  # an HTTP error status is still an answer
            answered.set()
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return answered.is_set()


def load_hub_dataset(name: str, config: str | None, *, what: str, offline_hint: str):
    """`datasets.load_dataset(name, config)` as a `DatasetDict`, or a quick, clear failure.

    Args:
        name: Hub dataset id, e.g. ``"ucirvine/sms_spam"``.
        config: Hub config name, or ``None``.
        what: What the data is, for the message (``"the SMS spam corpus"``).
        offline_hint: The offline alternatives, for the message.

    Raises:
        DatasetUnavailableError: If the Hub is unreachable (checked first, within
            `PROBE_TIMEOUT_S`), or ``load_dataset`` fails.
    """
    import datasets

    from .errors import DatasetUnavailableError

    label = name if config is None else f"{name} (config {config})"

    def unavailable(reason: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(
            f"Cannot load {what} from the Hugging Face Hub dataset {label}: {reason}. "
            f"To work offline, {offline_hint}."
        )

    # In offline mode `datasets` reads only its local cache, so trying costs nothing.
    if not datasets.config.HF_HUB_OFFLINE and not hub_reachable():
        raise unavailable(f"{hub_endpoint()} is unreachable")
    try:
        dataset = datasets.load_dataset(name, config)
    except Exception as err:  # noqa: BLE001 - any failure means the same thing to the user
        raise unavailable(f"{type(err).__name__}: {err}") from err
    if not isinstance(dataset, datasets.DatasetDict):
        raise unavailable(f"expected a DatasetDict of splits, got {type(dataset).__name__}")
    return dataset
