"""Post-install validation of an Ascend host, fleet or image: the host matches its
matrix row, devices are visible and healthy, a model trains, collectives connect.

``node/`` runs on the host (the artefact carries it); the modules here run on the controller: they
pack the artefact, reach the targets, merge what the nodes send and write the reports.
"""
