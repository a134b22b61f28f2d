"""`python -m statemachine`: print the lifecycle diagram kept in docs/lifecycle.md."""

from statemachine.table import mermaid

print("```mermaid\n" + mermaid() + "```")
