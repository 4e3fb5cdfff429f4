"""Host configs: INI files layered with extends, checked key by key; fleets; collective.recipe.backup's options."""
