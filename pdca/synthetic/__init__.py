"""The synthetic history of the demo campaign: not a task, a generator of the contract's feeds.

Start at `pdca.synthetic.demo_history`, which holds the entry points (`write_demo_feeds`,
`DemoFiles`, `summarise`, `campaign_spec`, `assign_variant`) and maps the other modules.
"""
