"""The start-run form: the batch size, checked the same way as the CLI and the API."""

from django import forms
from django.conf import settings

from signing.runs.dispatch import MAX_BATCH_SIZE


class StartRunForm(forms.Form):
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        help_text="Records per batch, fixed for the whole run.",
        error_messages={
            "invalid": "Batch size must be a whole number.",
            "required": "Enter a batch size.",
            "min_value": "Batch size must be at least 1.",
            "max_value": f"Batch size must be at most {MAX_BATCH_SIZE:,}.",
        },
    )

    follow = forms.BooleanField(
        required=False,
        label="Follow",
        help_text=(
            "Keep running and sign records as they arrive, until stopped from the run's page."
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["batch_size"].initial = settings.SIGNING_BATCH_SIZE
