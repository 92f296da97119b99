from __future__ import annotations

import pytest

from tests.tls.pki import DevPki, make_dev_pki


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return make_dev_pki(tmp_path_factory.mktemp("devpki"))
