"""Mail.so: the validation API's wire rules (:mod:`.protocol`) and typed results (:mod:`.models`).

The hook that speaks HTTP is :class:`clearout_provider.hooks.mailso.MailsoHook`; nothing in this package
does I/O.
"""

from clearout_provider.mailso.models import MailsoBatch, MailsoValidation

__all__ = ["MailsoBatch", "MailsoValidation"]
