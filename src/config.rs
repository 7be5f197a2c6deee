//! Mount configuration: every option with its default, parsed from the URL and `-o` list.
