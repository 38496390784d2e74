"""The built-in simulated network: IOS-XE-like routers over SSH and an APIC over HTTP.

Everything listens on loopback only, and simulated ping/traceroute never send a packet.

    with LabThread(devices=3, delay=0.05) as lab:
        inventory = lab.nornir_inventory()
        lab.set_fault("r2", Fault.DOWN)
"""

from chatbot.lab.apic import ApicStats, LabApic
from chatbot.lab.lab import Lab, LabThread, run_lab_forever
from chatbot.lab.model import DeviceStats, Fault, LabDevice
from chatbot.lab.planted import planted_secrets

__all__ = [
    "ApicStats",
    "DeviceStats",
    "Fault",
    "Lab",
    "LabApic",
    "LabDevice",
    "LabThread",
    "planted_secrets",
    "run_lab_forever",
]
