"""Training recipes: the engine (`recipes.engine`), augmentation (`recipes.augment`; datasets are `zoo.data`)
and one module per objective.

``zoo train RECIPE`` runs a preset; ``recipes.engine.list_presets()`` lists them. See `recipes.engine`
for the interface an objective implements.
"""
