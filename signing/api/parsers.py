"""The API's one parser: JSON as DRF parses it, except that an object naming a key twice is
refused (`{"payload": "a", "payload": "b"}`: which one was meant?), as `manage.py ingest`
refuses such a line. DRF's own JSONParser keeps the last value silently."""

from __future__ import annotations

import codecs
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json

from records.jsonl import object_with_unique_keys


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = get_encoding(parser_context or {})  # refuses bytes codecs (bz2_codec)
        try:
            return json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=json.strict_constant,  # NaN and Infinity are not JSON
                object_pairs_hook=object_with_unique_keys,
            )
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
