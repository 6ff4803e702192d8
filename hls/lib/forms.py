from __future__ import annotations

from typing import Any


class AccessibleFormMixin:
    """Ties each error message to its field for screen readers (aria-describedby).

    Django already marks fields with errors ``aria-invalid`` and links help text; the error
    text itself is rendered by ``includes/field.html`` with the id ``<field id>_error``.
    """

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        form: Any = self
        for name in form.errors:
            if name not in form.fields:
                continue
            widget = form.fields[name].widget
            bound = form[name]
            ids = [f"{bound.auto_id}_error"]
            if form.fields[name].help_text:
                ids.append(f"{bound.auto_id}_helptext")
            widget.attrs["aria-describedby"] = " ".join(ids)
