from anyrestore.cli.main import main

raise SystemExit(main())
