from llm_monitoring.cli import main

raise SystemExit(main())
