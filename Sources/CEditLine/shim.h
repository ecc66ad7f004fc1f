// libedit's readline interface (Debian's libedit-dev): line editing and history for `strata chat`.
// Only ChatCommand.swift imports this module.
#include <stdio.h>
#include <editline/readline.h>
