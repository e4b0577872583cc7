"""SMS orders: the forgiving order syntax (``syntax``), the normalised envelope a webhook
archives (``envelope``) and the reader the pipeline calls (``reader``). See docs/sms.md."""
