"""SFTP channel (paramiko): polling partners' servers for files, and putting files there.

``SftpChannel`` polls one partner's server (``channel``), ``SftpSender`` delivers outbound
files for ``OutboundDispatcher`` (``sender``), both over ``SftpConnection`` (``connection``)
pinned to the server's host key (``hostkey``). Errors: ``errors``.
"""

from gateway.channels.sftp.channel import PollResult, SftpChannel
from gateway.channels.sftp.connection import RemoteFile, SftpConnection
from gateway.channels.sftp.errors import HostKeyRefused, SftpError
from gateway.channels.sftp.sender import SftpSender

__all__ = ["HostKeyRefused", "PollResult", "RemoteFile", "SftpChannel", "SftpConnection",
           "SftpError", "SftpSender"]
