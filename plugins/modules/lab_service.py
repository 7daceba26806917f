#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Athlete Ally Platform Team
# Apache License 2.0 (see LICENSE)

# The action plugin (plugins/action/lab_service.py) does the work, on the controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_service
short_description: Drive one service of the rehearsal lab (status, restart, env, scale)
version_added: "0.2.0"
author:
  - Athlete Ally Platform Team (@athlete-ally)
description:
  - The lab driver of the C(service_driver) role, for the rehearsal lab that C(playbooks/lab_up.yml) runs on the
    controller under supervisord. Production uses the role's kubernetes driver instead.
  - Runs on the controller (an action plugin, no module process) and talks to supervisord over its unix socket.
  - O(operation=set_env) merges O(env) into the program's env file (read at start) and restarts a running program
    only when the file changed; O(operation=restart) stops and starts it; O(operation=scale) starts it for
    O(replicas) 1 or more and stops it for 0. Every start waits until O(health_url) answers 200, and fails early,
    in one line, when the program dies.
options:
  operation:
    description: What to do.
    type: str
    required: true
    choices: [status, restart, set_env, scale]
  program:
    description: The supervisord program (the lab service's name).
    type: str
    required: true
  supervisord_conf:
    description: The lab's C(supervisord.conf); its C([unix_http_server] file=) is the socket used.
    type: path
    required: true
  env_file:
    description: The program's env file, C(KEY=VALUE) lines read at its start.
    type: path
    required: true
  health_url:
    description: URL that answers 200 once the program is ready.
    type: str
    required: true
  health_timeout:
    description: Seconds to wait for O(health_url) after a start.
    type: float
    default: 60
  env:
    description:
      - For O(operation=set_env), variable -> value. A null value removes the variable; a non-string is written
        as its JSON text (V(true) -> C("true")).
    type: dict
  replicas:
    description: For O(operation=scale), 0 stops the program, 1 or more starts it (the lab runs one process).
    type: int
attributes:
  check_mode:
    support: full
    description: Reports what would change (the env keys, a restart) and changes nothing.
  diff_mode:
    support: full
    description: O(operation=set_env) shows the env file before and after.
  platform:
    support: full
    platforms: posix
    description: The controller, where the lab runs.
"""

EXAMPLES = r"""
- name: Switch normalize-service to multi mode (restarts it only when the env changed)
  athlete_ally.nats.lab_service:
    operation: set_env
    program: normalize-service
    supervisord_conf: "{{ lab_dir }}/supervisord.conf"
    env_file: "{{ lab_dir }}/env.d/normalize-service.env"
    health_url: http://127.0.0.1:18081/health
    env:
      EVENT_STREAM_MODE: multi
      AA_STREAM_CANDIDATES: AA_CORE_HOT,ATHLETE_ALLY_EVENTS
"""

RETURN = r"""
rolled:
  description: Whether the program was (or, in check mode, would be) restarted.
  returned: O(operation) is V(set_env) or V(restart)
  type: bool
running:
  description: Whether the program runs (after the operation).
  returned: always
  type: bool
changed_keys:
  description: The env variables that changed.
  returned: O(operation=set_env)
  type: list
  elements: str
seconds:
  description: Seconds from the start until O(health_url) answered 200.
  returned: when the program was started
  type: float
state:
  description: supervisord's state of the program (V(RUNNING), V(STOPPED), ...).
  returned: O(operation=status)
  type: str
pid:
  description: The program's process id, or null.
  returned: O(operation=status)
  type: str
env:
  description: The env file as a dict.
  returned: O(operation=status)
  type: dict
"""
