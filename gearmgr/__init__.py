"""gearmgr: run pools of Gearman workers."""
