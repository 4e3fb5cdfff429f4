"""Reading buildout files as buildout does: extends (local or remote), macros, references, parts."""
