"""The kill switch's control plane: signed control states and operators' manual commands."""
