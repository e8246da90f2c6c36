from mlplat.contracts import StepContext
from mlplat.data import Table


class ClipOutliers:
    def __init__(self, config):
        self.quantile = config.quantile

    def augment(self, train: Table, context: StepContext) -> Table:
        features = train.features.clip(train.features.quantile(self.quantile),
                                       train.features.quantile(1 - self.quantile), axis=1)
        return Table(features, train.labels, train.row_ids, train.weights, train.synthetic)
