"""Pictures: what a person looks at rather than reads.

    rendering.py   one PNG frame per decoding step, the animated GIF
    plotting.py    training loss per masking level
    race.py        diffusion and GPT-2 on one wall-clock timeline, frame by frame
    report.py      an experiment's figures, table and numbers, written all or nothing into one folder
"""
