"""sgdlab.Monitor in a Hugging Face Trainer: sharpness vs 2/eta and batch sharpness of a tiny BERT."""

import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from sgdlab.frontends.integrations.hf import MonitorCallback
from sgdlab.metrics.probes import ProbeSettings

torch.manual_seed(0)
config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=16, num_labels=2)  # default (SDPA) attention: measured by the math kernel
model = BertForSequenceClassification(config)  # built locally: nothing is downloaded
ids = torch.randint(0, 100, (256, 8))
labels = (ids[:, 0] < 50).long()
train = [{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels)]


def loss_fn(out, y):  # what BertForSequenceClassification computes from `labels`
    return F.cross_entropy(out.logits, y)


monitor = MonitorCallback(loss_fn, (ids, labels), batch_size=16, out="runs/monitor_hf", overwrite=True,
                          metrics={"sharpness": 10, "threshold": 10, "batch_sharpness": 20},
                          settings=ProbeSettings(max_batches=50))  # a quick demo: at most 50 batches per estimate
args = TrainingArguments("runs/hf-trainer", max_steps=40, per_device_train_batch_size=16, learning_rate=0.05,
                         optim="sgd", lr_scheduler_type="constant", use_cpu=True, report_to=[], save_strategy="no",
                         logging_strategy="no", disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=train, callbacks=[monitor]).train()
print(monitor.monitor)  # the last measurement, one line; `sgdlab plot runs/monitor_hf` draws them all
