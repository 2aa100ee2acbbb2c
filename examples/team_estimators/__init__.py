"""A team's own estimators, as a team would ship them beside its studies (an example package).

A study names one with ``custom_estimators: {cuped: "team_estimators.cuped:estimate"}``; the
package must be importable where the pipeline runs (installed, or its folder on PYTHONPATH).
"""
