from mindmirror.cli import main

raise SystemExit(main())
