"""Rule packs: YAML loaded with line numbers, validated, compiled into indexed matchers."""
