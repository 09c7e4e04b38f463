"""The supervision console (`sunlight serve`): inspectors and department heads in a browser,
departments answering a ticket through a signed link (docs/console.md)."""
