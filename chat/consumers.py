from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Placeholder until the streaming engine lands: refuses every connection."""

    async def connect(self):
        await self.close(code=4404)
